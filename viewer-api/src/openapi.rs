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
      "Viewing": {"type": "object", "properties": {
        "id": {"type": "string"}, "camera": {"type": "string"},
        "from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time"},
        "from_ms": {"type": "integer"}, "to_ms": {"type": "integer"},
        "codec": {"type": "string", "enum": ["h264", "h265"]}, "mime": {"type": "string", "example": "video/mp4; codecs=\"avc1.64001f\""},
        "width": {"type": "integer"}, "height": {"type": "integer"}, "frame_ms": {"type": "number"},
        "map": {"type": "array", "description": "[media ms, unix ms] where the MP4's time meets the wall clock; between points both advance together (gaps are skipped in the file)", "items": {"type": "array", "items": {"type": "integer"}}},
        "video": {"type": "string"}, "preview": {"type": "string"}, "thumb": {"type": "string"}}},
      "AuditEntry": {"type": "object", "properties": {
        "seq": {"type": "integer"}, "at": {"type": "string", "format": "date-time"}, "actor": {"type": "string"}, "role": {"type": "string"},
        "action": {"type": "string"}, "camera": {"type": "string", "nullable": true},
        "from": {"type": "string", "nullable": true}, "to": {"type": "string", "nullable": true},
        "purpose": {"type": "string", "nullable": true}, "case": {"type": "string", "nullable": true},
        "client": {"type": "string", "nullable": true}, "outcome": {"type": "string", "description": "allowed, or denied: <why>"}}},
      "Hold": {"type": "object", "description": "A legal hold, as recorder hold list --json prints it", "properties": {
        "id": {"type": "integer"}, "cameras": {"type": "array", "items": {"type": "string"}, "description": "camera ids, or [\"all\"]"},
        "from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time"},
        "case": {"type": "string"}, "by": {"type": "string", "description": "who placed it"},
        "until": {"type": "string", "format": "date-time", "nullable": true, "description": "expiry; null: until released"},
        "created": {"type": "string", "format": "date-time"}, "status": {"type": "string", "enum": ["active", "expired", "released"]},
        "released": {"type": "string", "format": "date-time", "description": "only when released"}, "released_by": {"type": "string", "description": "only when released"}}},
      "HoldRequest": {"type": "object", "required": ["cameras", "from", "to", "case"], "properties": {
        "cameras": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 64, "description": "camera ids in the officer's scope, or [\"all\"] (every camera, present and future: needs every camera in scope)"},
        "from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time", "description": "after from"},
        "case": {"type": "string", "maxLength": 200}, "until": {"type": "string", "format": "date-time", "description": "optional expiry, in the future"}}},
      "HealthCamera": {"type": "object", "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "state": {"type": "string", "description": "as the recorder last set it: recording, offline, ...; unknown when never set"},
        "state_since": {"type": "string", "format": "date-time", "nullable": true}, "state_reason": {"type": "string", "nullable": true},
        "oldest": {"type": "string", "format": "date-time", "nullable": true, "description": "start of the oldest footage held"},
        "newest": {"type": "string", "format": "date-time", "nullable": true, "description": "end of the newest closed segment, or start of the one being written"},
        "days_held": {"type": "number", "nullable": true, "description": "now - oldest, in days (2 decimals)"},
        "retention_days": {"type": "number", "description": "the camera's configured retention"},
        "segments": {"type": "integer"}, "bytes": {"type": "integer", "description": "bytes of closed segments (the one being written counts once closed)"},
        "gaps_24h": {"type": "array", "items": {"$ref": "#/components/schemas/Gap"}, "description": "gaps overlapping the last 24 h"}}},
      "HealthStore": {"type": "object", "properties": {
        "bytes_used": {"type": "integer"}, "max_bytes": {"type": "integer"}, "min_free_bytes": {"type": "integer"},
        "fs_size_bytes": {"type": "integer", "nullable": true}, "fs_free_bytes": {"type": "integer", "nullable": true, "description": "free for unprivileged users (statvfs)"},
        "holds_active": {"type": "integer"},
        "retention": {"type": "object", "nullable": true, "description": "retention's last stored state; null before the recorder's retention ran on this store", "properties": {
          "since": {"type": "string", "format": "date-time", "description": "when this state was first reported"},
          "alarm": {"type": "boolean"}, "alarms": {"type": "array", "items": {"type": "string"}},
          "clock_refused": {"type": "boolean"}, "clock_refused_reason": {"type": "string", "nullable": true}}},
        "disk": {"type": "object", "nullable": true, "description": "the disk under the store as the recorder last probed it (every minute); null where nothing watches it", "properties": {
          "alarm": {"type": "boolean"},
          "alarms": {"type": "array", "items": {"type": "object", "properties": {
            "kind": {"type": "string", "enum": ["read_only", "io_errors", "smart_failed", "smart_warning", "almost_full", "unknown"]}, "critical": {"type": "boolean"}, "text": {"type": "string"}}}},
          "read_only": {"type": "boolean", "nullable": true}, "used_percent": {"type": "integer", "nullable": true}, "io_errors": {"type": "integer"},
          "device": {"type": "string", "nullable": true}, "smart": {"type": "object", "description": "SMART as smartctl reported it, or why not available"}}},
        "tamper": {"type": "object", "nullable": true, "description": "the case-open switch; null where the box has none configured", "properties": {
          "state": {"type": "string", "enum": ["closed", "open", "unknown"]}, "alarm": {"type": "boolean", "description": "an opening latched until an IT user acknowledges it"},
          "opened_at": {"type": "string", "format": "date-time", "nullable": true}, "openings": {"type": "integer", "nullable": true},
          "found_open_at_start": {"type": "boolean", "nullable": true}, "input_error": {"type": "string", "nullable": true},
          "last_acknowledged_by": {"type": "string", "nullable": true}}}}},
      "Health": {"type": "object", "properties": {
        "now": {"type": "string", "format": "date-time", "description": "the server's clock"},
        "cameras": {"type": "array", "items": {"$ref": "#/components/schemas/HealthCamera"}},
        "store": {"allOf": [{"$ref": "#/components/schemas/HealthStore"}], "nullable": true, "description": "null for contractors"}}},
      "JournalEntry": {"type": "object", "properties": {
        "seq": {"type": "integer"}, "segment": {"type": "string"}, "camera": {"type": "string"},
        "from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time"},
        "bytes": {"type": "integer"}, "sha256": {"type": "string", "nullable": true},
        "deleted_at": {"type": "string", "format": "date-time"}, "reason": {"type": "string", "enum": ["age", "capacity", "disk-full"]}}},
      "Export": {"type": "object", "properties": {
        "id": {"type": "string"}, "state": {"type": "string", "enum": ["queued", "running", "done", "failed", "expired"]},
        "progress": {"type": "number", "minimum": 0, "maximum": 1}, "case": {"type": "string"}, "reason": {"type": "string"},
        "cameras": {"type": "array", "items": {"type": "string"}}, "from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time"},
        "requested_by": {"type": "string"}, "created": {"type": "string", "format": "date-time"},
        "expires": {"type": "string", "format": "date-time", "description": "once done"}, "bytes": {"type": "integer", "description": "once done"},
        "error": {"type": "string", "description": "when failed"}}}
    },
    "parameters": {
      "id": {"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[a-z0-9-]{1,32}$"}},
      "from": {"name": "from", "in": "query", "required": true, "schema": {"type": "string", "format": "date-time"}},
      "to": {"name": "to", "in": "query", "required": true, "schema": {"type": "string", "format": "date-time"}, "description": "after from, at most 24 h later"}
    },
    "responses": {
      "Error": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "TooManyStreams": {"description": "too many footage streams at once: 8 per user, 64 on the device (each stream, live or not, holds its place until it ends, its client goes, or its client reads nothing for 30 s); logged as refused when the request is logged", "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    }
  },
  "security": [{"bearer": []}, {"cookie": []}],
  "paths": {
    "/login": {"post": {"security": [], "summary": "Log in; the token expires after 15 min idle, 8 h at most",
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["username", "password"], "properties": {"username": {"type": "string"}, "password": {"type": "string"}}}}}},
      "responses": {"200": {"description": "token", "content": {"application/json": {"schema": {"type": "object", "properties": {"token": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"}}}}}}, "401": {"description": "wrong user name or password, or locked after failed sign-ins (then with Retry-After: seconds)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}, "503": {"$ref": "#/components/responses/Error"}}}},
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
        "404": {"$ref": "#/components/responses/Error"}, "416": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "429": {"$ref": "#/components/responses/TooManyStreams"}}}},
    "/cameras/{id}/live.mp4": {"get": {"summary": "Live view as fragmented MP4 over chunked HTTP (ftyp+moov, then prft+moof+mdat per stored chunk), from the newest key frame; each prft gives the wall-clock time of the fragment's first frame (the camera's media clock, set by the frames that reached the recorder soonest). Logged as action live before the first byte, and live.end when it ends",
      "parameters": [{"$ref": "#/components/parameters/id"},
        {"name": "case", "in": "query", "schema": {"type": "string", "maxLength": 200}, "description": "case reference (police: required)"},
        {"name": "purpose", "in": "query", "schema": {"type": "string", "maxLength": 200}, "description": "purpose (it, contractor with a live grant: required)"}],
      "responses": {"200": {"description": "video, until the client disconnects, the session ends or the rights are withdrawn", "content": {"video/mp4": {}}},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
        "404": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "429": {"$ref": "#/components/responses/TooManyStreams"}}}},
    "/cameras/{id}/live-preview.mp4": {"get": {"summary": "Live view transcoded to H.264 for browsers that cannot decode the camera's codec (MediaSource.isTypeSupported says no): video/mp4; codecs=\"avc1.42C01F\" (constrained baseline, level 3.1), at most 640x360 keeping the aspect, a key frame about every second, about 800 kbit/s. Fragmented MP4 over chunked HTTP (ftyp+moov, then prft+moof+mdat per stored chunk, the first frame alone first), from the newest key frame, on one media timeline from 0; each prft gives the wall-clock time of the fragment's first frame (the camera's media clock, set by the frames that reached the recorder soonest). Same access rules as live.mp4; logged as action live (outcome: H.264 preview) before the first byte, and live.end with the range shown when it ends; the rights are re-checked every 5 s; it ends when the client disconnects or reads nothing for 30 s. A footage stream (429 over the limits of streams at once), and it takes one of the few preview slots while it runs (503 with Retry-After when none is free)",
      "parameters": [{"$ref": "#/components/parameters/id"},
        {"name": "case", "in": "query", "schema": {"type": "string", "maxLength": 200}, "description": "case reference (police: required)"},
        {"name": "purpose", "in": "query", "schema": {"type": "string", "maxLength": 200}, "description": "purpose (it, contractor with a live grant: required)"}],
      "responses": {"200": {"description": "video, until the client disconnects, the session ends or the rights are withdrawn", "content": {"video/mp4; codecs=\"avc1.42C01F\"": {}}},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
        "404": {"$ref": "#/components/responses/Error"}, "429": {"$ref": "#/components/responses/TooManyStreams"}, "503": {"$ref": "#/components/responses/Error"}}}},
    "/cameras/{id}/viewings": {"post": {"summary": "Open a viewing: one authorized look at a camera from a moment on, logged once (action playback) for exactly the range served (from the key frame at or before at; a contractor's narrow grant starts at the first key frame inside it and ends with the grant). The console plays it through the URLs in the answer.",
      "parameters": [{"$ref": "#/components/parameters/id"}],
      "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["at"], "properties": {
        "at": {"type": "string", "format": "date-time"}, "secs": {"type": "integer", "minimum": 1, "maximum": 86400, "default": 1800},
        "case": {"type": "string", "maxLength": 200, "description": "police: required"}, "purpose": {"type": "string", "maxLength": 200, "description": "it, contractor: required"}}}}}},
      "responses": {"201": {"description": "the viewing", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Viewing"}}}},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
        "404": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
    "/viewings/{id}/video.mp4": {"get": {"summary": "The viewing's frames as MP4 (original frames; Range). Only for the session that opened it; the policy is checked again on every request; no new log entry (the viewing's covers it)",
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "responses": {"200": {"description": "video", "content": {"video/mp4": {}}}, "206": {"description": "part of the video", "content": {"video/mp4": {}}},
        "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "416": {"$ref": "#/components/responses/Error"}, "429": {"$ref": "#/components/responses/TooManyStreams"}}}},
    "/viewings/{id}/preview.mp4": {"get": {"summary": "The viewing's frames transcoded to H.264 for browsers that cannot decode the camera's codec: video/mp4; codecs=\"avc1.42C01F\" (constrained baseline, level 3.1), at most 640x360 keeping the aspect, a key frame about every second, about 800 kbit/s. A fragmented MP4 (ftyp+moov, then prft+moof+mdat) streamed with chunked encoding while it is made; no Range. Its media time is the viewing's MP4's (first frame at 0, the same frame durations), so the viewing's time map applies; each prft gives the wall-clock time of the fragment's first frame. Same access rules and log entry as video.mp4; the rights are re-checked every 10 s while it runs, and it ends when the client stops reading for 30 s",
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
        {"name": "t", "in": "query", "schema": {"type": "integer", "minimum": 0}, "description": "media time (ms) to start at: the preview starts at the key frame at or before it, on the same timeline (its first frame has that key frame's media time)"}],
      "responses": {"200": {"description": "video; the X-Preview-Start-Ms header gives the media time (ms) of its first frame", "content": {"video/mp4": {}}},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
        "404": {"$ref": "#/components/responses/Error"}, "500": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "429": {"$ref": "#/components/responses/TooManyStreams"}}}},
    "/viewings/{id}/thumb.jpg": {"get": {"summary": "A scrub thumbnail: the key frame at or before at, as a JPEG 160 pixels wide (aspect kept). Same access rules and log entry as video.mp4",
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
        {"name": "at", "in": "query", "required": true, "schema": {"type": "string", "format": "date-time"}, "description": "inside the viewing's from..to"}],
      "responses": {"200": {"description": "JPEG; X-Frame-Time (RFC 3339) and X-Media-Ms say which frame it shows", "content": {"image/jpeg": {}}},
        "400": {"$ref": "#/components/responses/Error"}, "401": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"},
        "404": {"$ref": "#/components/responses/Error"}, "500": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
    "/site": {"get": {"security": [], "summary": "What the console needs before sign-in: the site's time zone", "responses": {"200": {"description": "site", "content": {"application/json": {"schema": {"type": "object", "properties": {"time_zone": {"type": "string", "example": "Europe/Luxembourg"}}}}}}}}},
    "/audit/verify": {"get": {"summary": "Walk the access log's hash chain (it, auditor), as viewer-api audit verify does",
      "responses": {"200": {"description": "intact, entries; or first_bad_seq and why", "content": {"application/json": {"schema": {"type": "object", "properties": {"intact": {"type": "boolean"}, "entries": {"type": "integer"}, "first_bad_seq": {"type": "integer"}, "why": {"type": "string"}, "checked_at": {"type": "string", "format": "date-time"}}}}}}, "403": {"$ref": "#/components/responses/Error"}}}},
    "/grants": {
      "post": {"summary": "Grant a contractor access (it)", "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Grant"}}}},
        "responses": {"201": {"description": "created", "content": {"application/json": {"schema": {"type": "object", "properties": {"id": {"type": "integer"}}}}}}, "400": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}}},
      "get": {"summary": "Grants (it: all; contractor: own)", "responses": {"200": {"description": "grants"}}}},
    "/grants/{id}": {"delete": {"summary": "Revoke a grant (it)", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
      "responses": {"204": {"description": "revoked"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}}},
    "/audit": {"get": {"summary": "Access-log entries (it, auditor: all; police: own)",
      "parameters": [{"name": "camera", "in": "query", "schema": {"type": "string"}}, {"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}}, {"name": "actor", "in": "query", "schema": {"type": "string"}},
        {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1}, "description": "only entries with a sequence number below this (the X-Next-Before of the previous page)"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000}}],
      "responses": {"200": {"description": "the newest page of matching entries, oldest first", "headers": {"X-Next-Before": {"schema": {"type": "integer"}, "description": "present while older entries remain: the before= of the next page"}, "Link": {"schema": {"type": "string"}, "description": "rel=\"next\": the next page"}}, "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}}}}}, "403": {"$ref": "#/components/responses/Error"}}}},
    "/audit/subject-access": {"get": {"summary": "Subject-access report (auditor, it): who viewed or exported footage of a camera covering a time, when and why",
      "parameters": [{"name": "camera", "in": "query", "schema": {"type": "string"}}, {"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}}, {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 1}, "description": "only entries with a sequence number below this (the X-Next-Before of the previous page)"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000}}],
      "responses": {"200": {"description": "the newest page of allowed footage views (playback, live, exports; one entry per camera), oldest first", "headers": {"X-Next-Before": {"schema": {"type": "integer"}, "description": "present while older entries remain: the before= of the next page"}, "Link": {"schema": {"type": "string"}, "description": "rel=\"next\": the next page"}}, "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}}}}}, "403": {"$ref": "#/components/responses/Error"}}}},
    "/openapi.json": {"get": {"security": [], "summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}},
    "/metrics": {"get": {"summary": "Prometheus metrics (system-health right)", "responses": {"200": {"description": "OpenMetrics text"}}}},
    "/holds": {
      "get": {"summary": "Legal holds (police, it, auditor; police see those touching a camera of their scope), oldest first",
        "parameters": [{"name": "all", "in": "query", "schema": {"type": "boolean"}, "description": "include released holds"}],
        "responses": {"200": {"description": "holds", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Hold"}}}}}, "400": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}}},
      "post": {"summary": "Place a legal hold (police, cameras in scope, with a case reference; by = the officer). Logged as hold.create before it takes effect, allowed or denied",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HoldRequest"}}}},
        "responses": {"201": {"description": "placed", "content": {"application/json": {"schema": {"type": "object", "properties": {"id": {"type": "integer"}}}}}}, "400": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "415": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
    "/holds/{id}": {"delete": {"summary": "Release a hold (police: their own; not the hold of an export still running). Logged as hold.release before it takes effect, allowed or denied",
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}],
      "responses": {"204": {"description": "released"}, "400": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
    "/health": {"get": {"summary": "System health: each camera the caller may see (state, footage held, gaps of the last 24 h), the store and the forwarding of the access log to the log collector (not for contractors), the server's time",
      "responses": {"200": {"description": "health", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}, "403": {"$ref": "#/components/responses/Error"}}}},
    "/tamper/ack": {"post": {"summary": "Acknowledge the latched alarm of the case-open switch (it), after looking at the box. Logged as tamper.acknowledge before it takes effect, allowed or denied",
      "responses": {"200": {"description": "acknowledged", "content": {"application/json": {"schema": {"type": "object", "properties": {
        "acknowledged_by": {"type": "string"}, "at": {"type": "string", "format": "date-time"}, "opened_at": {"type": "string", "format": "date-time"}, "openings": {"type": "integer"}}}}}},
        "400": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
    "/journal": {"get": {"summary": "The deletion journal (it, auditor), newest first, by pages",
      "parameters": [{"name": "camera", "in": "query", "schema": {"type": "string"}}, {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}, "description": "deleted at or after"},
        {"name": "before", "in": "query", "schema": {"type": "integer"}, "description": "only entries before this seq (next_before of the previous page)"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}],
      "responses": {"200": {"description": "one page", "content": {"application/json": {"schema": {"type": "object", "properties": {
        "entries": {"type": "array", "items": {"$ref": "#/components/schemas/JournalEntry"}}, "more": {"type": "boolean"}, "next_before": {"type": "integer", "nullable": true}}}}}}, "400": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}}}},
    "/exports": {
      "post": {"summary": "Ask for an export (police; cameras in scope, at most 24 h, case and reason required); a hold covers the range while it runs",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["cameras", "from", "to", "case", "reason"], "properties": {
          "cameras": {"type": "array", "items": {"type": "string"}}, "from": {"type": "string", "format": "date-time"}, "to": {"type": "string", "format": "date-time"},
          "case": {"type": "string", "maxLength": 200}, "reason": {"type": "string", "maxLength": 200}}}}}},
        "responses": {"202": {"description": "queued", "content": {"application/json": {"schema": {"type": "object", "properties": {"id": {"type": "string"}}}}}}, "400": {"$ref": "#/components/responses/Error"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}},
      "get": {"summary": "The calling officer's own exports, newest first (police only)",
        "responses": {"200": {"description": "exports", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Export"}}}}}, "403": {"$ref": "#/components/responses/Error"}}}},
    "/exports/{id}": {"get": {"summary": "An export's state and progress (its officer, or police naming its case)",
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}, {"name": "case", "in": "query", "schema": {"type": "string"}}],
      "responses": {"200": {"description": "export", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Export"}}}}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "410": {"$ref": "#/components/responses/Error"}}}},
    "/exports/{id}/download": {"get": {"summary": "The signed bundle (zip), logged as export.download before the first byte",
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}, {"name": "case", "in": "query", "schema": {"type": "string"}}],
      "responses": {"200": {"description": "bundle", "content": {"application/zip": {}}}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "409": {"$ref": "#/components/responses/Error"}, "410": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}, "429": {"$ref": "#/components/responses/TooManyStreams"}}}},
    "/device-key": {"get": {"security": [], "summary": "The device's Ed25519 public key that signs export manifests (PEM)",
      "responses": {"200": {"description": "PEM", "content": {"application/x-pem-file": {}}}, "503": {"$ref": "#/components/responses/Error"}}}}
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
            "/holds",
            "/holds/{id}",
            "/health",
            "/tamper/ack",
            "/journal",
            "/exports",
            "/exports/{id}",
        ] {
            assert!(paths.contains_key(p), "{p}");
        }
    }

    /// Every `/api/v1` route the routers register is in the document: read from the
    /// routers' own source, so a new endpoint cannot be forgotten.
    #[test]
    fn every_route_is_described() {
        let v: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        let paths = v["paths"].as_object().unwrap();
        let sources = [
            include_str!("api/mod.rs"),
            include_str!("viewing.rs"),
            include_str!("admin.rs"),
            include_str!("preview/mod.rs"),
            include_str!("export/api.rs"),
            include_str!("web.rs"),
        ];
        let mut found = 0;
        for src in sources {
            for part in src.split("\"/api/v1").skip(1) {
                let path = &part[..part.find('"').unwrap()];
                if path.is_empty() || !src.contains(&format!(".route(\"/api/v1{path}\"")) {
                    continue;
                }
                found += 1;
                assert!(
                    paths.contains_key(path),
                    "route /api/v1{path} is not in the OpenAPI document"
                );
            }
        }
        assert!(
            found >= 20,
            "only {found} routes found in the routers' source"
        );
    }
}
