"""The run: configuration, the stages of SemDeDup over parts of the input, the executors that decide where
each unit of work runs (this process, or Ray), and progress reporting."""
