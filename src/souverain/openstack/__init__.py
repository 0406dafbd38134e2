"""The edge every OpenStack-style API of the cloud shares.

A request to `/compute`, `/volume`, `/network`, `/image`, `/identity` or `/billing`
passes here before any service runs:

- `routing.Edge` turns a service's handlers into routes. Each route names the
  policy action it needs per method (`compute:server:create`); the edge
  authenticates the caller (`auth.authenticate`, against the `TokenValidator`
  protocol that identity implements), negotiates the microversion when the API
  has them (`microversion.Microversions`) and asks the one policy table
  (`common.policy`) before the handler is called.
- `body` reads and validates JSON bodies; `query` parses query parameters,
  one parser per type.
- `faults.ErrorLayer` renders every error in the API's own wire format;
  `links` builds the URLs a response points at.

Nothing here knows a service; services know nothing of this package. Only
each service's `api` module joins the two.
"""
