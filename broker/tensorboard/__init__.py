"""TensorBoard over an experiment's event files: a local copy of them (:mod:`.mirror`) and one
``tensorboard`` process per experiment the broker proxies to (:mod:`.servers`)."""
