from agentsearch.cli import main

main()
