"""The layers above the pod network. Importing this package registers them in
`labkit.lab.LAYERS`, in the order they are applied."""
