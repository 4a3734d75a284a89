#!/bin/sh
# Entry point of the trader image: the command names the service to run.
#   <image> gateway | data | portfolio | planner | trading | display
# Anything else runs as given, e.g. `<image> python -m services.data.import_prices AAPL.US f.csv`.
set -eu
case "${1:-}" in
    gateway) shift; exec python -m gateway "$@" ;;
    data | portfolio | planner | trading | display) service="$1"; shift; exec python -m "services.$service" "$@" ;;
    "") echo "name a service: gateway, data, portfolio, planner, trading or display" >&2; exit 64 ;;
    *) exec "$@" ;;
esac
