"""One Blueprint per area. Triggers only parse, call one service and map the result."""
