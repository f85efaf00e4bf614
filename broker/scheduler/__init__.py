"""The scheduler loops (dispatch, monitor, health) and the lease that elects who runs them."""
