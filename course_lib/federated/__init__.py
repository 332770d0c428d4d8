"""Federated meta-learning (chapter 09, section 1): plain functions in `core`, the Flower runtime in `flower`."""

from course_lib.federated.core import (CLIENT_METHODS, FedConfig, aggregate, client_update, initial_theta,
                                       payload_bytes, run_federated, split_clients)

__all__ = ["CLIENT_METHODS", "FedConfig", "aggregate", "client_update", "initial_theta", "payload_bytes",
           "run_federated", "split_clients"]
