from flows.cli import main

# Guarded: Dask's worker processes start by re-importing the main module.
if __name__ == "__main__":
    main()
