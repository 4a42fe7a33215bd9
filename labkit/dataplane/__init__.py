"""Pure planning: from a topology and its addresses to what each node must run."""
