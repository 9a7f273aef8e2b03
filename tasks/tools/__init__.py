"""Side tools on a library or workspace: detector dataset and training, evaluation against ground truth, projection into an LLM space, audio features."""
