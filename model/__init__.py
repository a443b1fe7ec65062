"""ABPN: the network, its blend pyramid and the engine that runs it on photos of any size."""
