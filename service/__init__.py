"""abpn-serve: the HTTP microservice around the ABPN retouching engine.

`python -m service` runs it; `service.app.create_app` builds the ASGI app. The service imports
`model`, never the other way round.
"""
