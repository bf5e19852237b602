"""Agents as clients of the contract (FR-181..FR-184): the API's operations as Model
Context Protocol tools (`tools`), one server of them (`server`), served over stdio as a
client of any deployment (`stdio`, `todo-service mcp`) or at /mcp by the service itself
(`endpoint`, TODO_MCP=on). Off, none of it is imported."""
