"""What every layer stands on: handles, probes, the cluster context, pod lifecycle."""
