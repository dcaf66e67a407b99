"""Agent-assisted card payments: the caller keys the card into the engine, never to the agent."""
