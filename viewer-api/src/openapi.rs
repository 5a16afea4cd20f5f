//! The OpenAPI 3 description of `/api/v1`, hand-written: the API is small, and a
//! document written by hand says what the contract *is*, not what the code happens
//! to derive. The test checks that it parses and names every route.

pub const DOCUMENT: &str = r##"{
  "openapi": "3.0.3",
  "info": {
    "title": "Ringfence viewer API",
    "version": "1",
    "description": "Role-based access to recorded footage. Every footage request needs a reason (case for police, purpose for others) and is written to a hash-chained access log before any byte is served. Times are RFC 3339 UTC. Errors are {\"error\": \"...\"}."
  },
  "servers": [{"url": "/api/v1"}],
  "components": {
    "securitySchemes": {
      "bearer": {"type": "http", "scheme": "bearer"},
      "cookie": {"type": "apiKey", "in": "cookie", "name": "rf_session"}
    },
    "schemas": {
      "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
      "Camera": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "state": {"type": "string"}}},
      "Span": {"type": "object", "properties": {"from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time"}}},
      "Gap": {"type": "object", "properties": {"from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time", "nullable": true}, "reason": {"type": "string"}}},
      "Grant": {"type": "object", "required": ["user", "cameras", "from", "until", "allow", "ticket"], "properties": {
        "user": {"type": "string"}, "cameras": {"type": "array", "items": {"type": "string"}},
        "from": {"type": "string", "format": "date-time"}, "until": {"type": "string", "format": "date-time"},
        "allow": {"type": "array", "items": {"type": "string", "enum": ["live", "playback"]}},
        "playback_from": {"type": "string", "format": "date-time"}, "playback_to": {"type": "string", "format": "date-time"},
        "ticket": {"type": "string"}}},
      "AuditEntry": {"type": "object", "properties": {
        "seq": {"type": "integer"}, "at": {"type": "string", "format": "date-time"}, "actor": {"type": "string"}, "role": {"type": "string"},
        "action": {"type": "string"}, "camera": {"type": "string", "nullable": true},
        "from": {"type": "string", "nullable": true}, "to": {"type": "string", "nullable": true},
        "purpose": {"type": "string", "nullable": true}, "case": {"type": "string", "nullable": true},
        "client": {"type": "string", "nullable": true}, "outcome": {"type": "string", "description": "allowed, or denied: <why>"}}}
    },
    "parameters": {
      "id": {"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[a-z0-9-]{1,32}$"}},
      "from": {"name": "from", "in": "query", "required": true, "schema": {"type": "string", "format": "date-time"}},
      "to": {"name": "to", "in": "query", "required": true, "schema": {"type": "string", "format": "date-time"}, "description": "after from, at most 24 h later"}
    },
    "responses": {
      "Error": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    }
  },
  "security": [{"bearer": []}, {"cookie": []}],
  "paths": {
    "/login": {"post": {"security": [], "summary": "Log in; the token expires after 15 min idle, 8 h at most",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["username", "password"], "properties": {"username": {"type": "string"}, "password": {"type": "string"}}}}}},
      "responses": {"200": {"description": "token", "content": {"application/json": {"schema": {"type": "object", "properties": {"token": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"}}}}}}, "401": {"$ref": "#/components/responses/Error"}}}},
    "/logout": {"post": {"summary": "Revoke the session", "responses": {"204": {"description": "revoked"}, "401": {"$ref": "#/components/responses/Error"}}}},
    "/me": {"get": {"summary": "The caller", "responses": {"200": {"description": "name, role, cameras, expires_at"}, "401": {"$ref": "#/components/responses/Error"}}}},
    "/cameras": {"get": {"summary": "Cameras the caller may see, with their state",
      "responses": {"200": {"description": "cameras", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Camera"}}}}}, "401": {"$ref": "#/components/responses/Error"}}}},
    "/cameras/{id}/recordings": {"get": {"summary": "Recorded spans and gaps",
      "parameters": [{"$ref": "#/components/parameters/id"}, {"$ref": "#/components/parameters/from"}, {"$ref": "#/components/parameters/to"}],
      "responses": {"200": {"description": "spans and gaps", "content": {"application/json": {"schema": {"type": "object", "properties": {"spans": {"type": "array", "items": {"$ref": "#/components/schemas/Span"}}, "gaps": {"type": "array", "items": {"$ref": "#/components/schemas/Gap"}}}}}}},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}}},
    "/cameras/{id}/video.mp4": {"get": {"summary": "A time range as MP4 (original frames, from the key frame at or before from); supports Range",
      "parameters": [{"$ref": "#/components/parameters/id"}, {"$ref": "#/components/parameters/from"}, {"$ref": "#/components/parameters/to"},
        {"name": "case", "in": "query", "schema": {"type": "string", "maxLength": 200}, "description": "case reference (police: required)"},
        {"name": "purpose", "in": "query", "schema": {"type": "string", "maxLength": 200}, "description": "purpose (it, contractor: required)"}],
      "responses": {"200": {"description": "video", "content": {"video/mp4": {}}}, "206": {"description": "part of the video", "content": {"video/mp4": {}}},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
        "404": {"$ref": "#/components/responses/Error"}, "416": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
    "/cameras/{id}/live.mp4": {"get": {"summary": "Live view as fragmented MP4 over chunked HTTP (ftyp+moov, then prft+moof+mdat per stored chunk), from the newest key frame; each prft gives the wall-clock time the recorder received the fragment's first frame. Logged as action live before the first byte, and live.end when it ends",
      "parameters": [{"$ref": "#/components/parameters/id"},
        {"name": "case", "in": "query", "schema": {"type": "string", "maxLength": 200}, "description": "case reference (police: required)"},
        {"name": "purpose", "in": "query", "schema": {"type": "string", "maxLength": 200}, "description": "purpose (it, contractor with a live grant: required)"}],
      "responses": {"200": {"description": "video, until the client disconnects, the session ends or the rights are withdrawn", "content": {"video/mp4": {}}},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
        "404": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
    "/grants": {
      "post": {"summary": "Grant a contractor access (it)", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Grant"}}}},
        "responses": {"201": {"description": "created", "content": {"application/json": {"schema": {"type": "object", "properties": {"id": {"type": "integer"}}}}}}, "400": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}}},
      "get": {"summary": "Grants (it: all; contractor: own)", "responses": {"200": {"description": "grants"}}}},
    "/grants/{id}": {"delete": {"summary": "Revoke a grant (it)", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
      "responses": {"204": {"description": "revoked"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}}},
    "/audit": {"get": {"summary": "Access-log entries (it, auditor: all; police: own)",
      "parameters": [{"name": "camera", "in": "query", "schema": {"type": "string"}}, {"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}}, {"name": "actor", "in": "query", "schema": {"type": "string"}}],
      "responses": {"200": {"description": "entries", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}}}}}, "403": {"$ref": "#/components/responses/Error"}}}},
    "/audit/subject-access": {"get": {"summary": "Subject-access report (auditor): who viewed footage of a camera covering a time, when and why",
      "parameters": [{"name": "camera", "in": "query", "schema": {"type": "string"}}, {"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}}, {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}}],
      "responses": {"200": {"description": "entries of allowed footage views", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}}}}}, "403": {"$ref": "#/components/responses/Error"}}}},
    "/openapi.json": {"get": {"security": [], "summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics (system-health right)", "responses": {"200": {"description": "OpenMetrics text"}}}}
  }
}"##;

#[cfg(test)]
mod tests {
    #[test]
    fn document_is_json_and_complete() {
        let v: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        let paths = v["paths"].as_object().unwrap();
        for p in [
            "/login",
            "/cameras",
            "/cameras/{id}/recordings",
            "/cameras/{id}/video.mp4",
            "/cameras/{id}/live.mp4",
            "/grants",
            "/grants/{id}",
            "/audit",
        ] {
            assert!(paths.contains_key(p), "{p}");
        }
    }
}
