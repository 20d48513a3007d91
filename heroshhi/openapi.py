"""drf-spectacular hooks: one entry per route (the slash twin is left out) and the
HeyDoc session routes, which are plain Django views, described by hand."""

_ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}


def drop_slash_duplicates(endpoints, **kwargs):
    paths = {path for path, *_ in endpoints}
    return [
        (path, regex, method, callback)
        for path, regex, method, callback in endpoints
        if not (path.endswith("/") and path.rstrip("/") in paths)
    ]


def _json_response(description, schema):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description):
    return _json_response(description, _ENVELOPE)


def add_session_routes(result, generator, request, public):
    user = {"$ref": "#/components/schemas/UserOutput"}
    session_note = (
        "HeyDoc session route. A JSON body gets a JSON answer and the `sessionid` and `csrftoken` "
        "cookies; an HTML form post gets redirects. Session clients send the `csrftoken` cookie's "
        "value in `X-CSRFToken` on unsafe API methods."
    )
    credentials = {
        "type": "object",
        "required": ["email", "password"],
        "properties": {
            "email": {"type": "string", "format": "email", "description": "`username` is accepted too."},
            "password": {"type": "string"},
            "code": {"type": "string", "description": "TOTP code, when the user has 2FA on."},
        },
    }
    register = {
        "type": "object",
        "required": ["name", "email", "password"],
        "properties": {
            "name": {"type": "string"},
            "email": {"type": "string", "format": "email"},
            "password": {"type": "string"},
            "company": {"type": "string"},
        },
    }
    answer = {
        "type": "object",
        "properties": {"success": {"type": "boolean"}, "message": {"type": "string"}, "user": user},
    }
    result["paths"]["/login"] = {
        "post": {
            "operationId": "session_login",
            "tags": ["session (HeyDoc)"],
            "summary": "Log in and receive a session cookie",
            "description": session_note,
            "security": [],
            "requestBody": {"required": True, "content": {"application/json": {"schema": credentials}}},
            "responses": {
                "200": _json_response("Logged in; `sessionid` cookie set.", answer),
                "400": _error("VALIDATION_ERROR or INVALID_JSON"),
                "401": _error("INVALID_CREDENTIALS, TWO_FACTOR_REQUIRED or INVALID_2FA_CODE"),
                "413": _error("PAYLOAD_TOO_LARGE"),
                "429": _error("RATE_LIMITED"),
            },
        }
    }
    result["paths"]["/register"] = {
        "post": {
            "operationId": "session_register",
            "tags": ["session (HeyDoc)"],
            "summary": "Create a workspace and its admin, and log in",
            "description": session_note,
            "security": [],
            "requestBody": {"required": True, "content": {"application/json": {"schema": register}}},
            "responses": {
                "201": _json_response("Registered and logged in.", answer),
                "400": _error("VALIDATION_ERROR (e.g. email taken, weak password) or INVALID_JSON"),
                "429": _error("RATE_LIMITED"),
            },
        }
    }
    result["paths"]["/logout"] = {
        "get": {
            "operationId": "session_logout",
            "tags": ["session (HeyDoc)"],
            "summary": "End the session",
            "description": "With `Accept: application/json` answers JSON; otherwise redirects to /login.",
            "responses": {"200": _json_response("Logged out.", answer)},
        }
    }
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    if "ErrorEnvelope" not in schemas:
        schemas["ErrorEnvelope"] = {
            "type": "object",
            "required": ["success", "message", "error"],
            "properties": {
                "success": {"type": "boolean", "example": False},
                "message": {"type": "string"},
                "error": {"type": "string", "description": "Stable machine code."},
                "errors": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
            },
        }
    return result
