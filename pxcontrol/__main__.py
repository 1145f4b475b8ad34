from pxcontrol.cli import main

main()
