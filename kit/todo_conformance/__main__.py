from todo_conformance.cli import main

main()
