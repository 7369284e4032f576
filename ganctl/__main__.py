from ganctl.cli import main

# Guarded: DDP's spawned workers import the parent's __main__ and must not rerun the CLI.
if __name__ == "__main__":
    main()
