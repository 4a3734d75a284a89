"""Gateway (trader.gateway.v1.Gateway): the sync cycle, system status, the replay driver."""
