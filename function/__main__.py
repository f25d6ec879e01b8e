from function.cli import command

command()
