"""Display service (trader.display.v1.Display)."""
