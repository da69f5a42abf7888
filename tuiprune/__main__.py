from tuiprune.cli import main

main()
