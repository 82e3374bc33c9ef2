#ifndef BUILDD_GATEWAY_OPENAPI_H_
#define BUILDD_GATEWAY_OPENAPI_H_

// GET /openapi.json: an OpenAPI 3.1 document made from the router's own
// route table, so that it lists exactly the routes the gateway serves. Each
// route's RouteDoc (given at registration) supplies its summary, body, query
// and answers; the schemas are the protos' JSON mapping (lowerCamelCase
// names, enums by value name, 64-bit integers as strings, Struct as an
// object), and every error is {"error":{"code","message"}} (ErrorBody).

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "gateway/router.h"

namespace buildd::gateway {

struct OpenApiInfo {
  std::string title = "buildd gateway";
  std::string version = "v1";
};

// The document for every route of `router`, as one line of JSON with its
// object keys sorted (the same bytes for the same routes). A route without
// documentation appears with "x-undocumented": true and no schemas.
//
// Besides each route's RouteDoc::errors, every operation lists what the
// server answers before a handler runs: 400 (a malformed query string),
// 413 when it takes a body, 401 and 429 for Auth::kRequired (no credential;
// too many refused credentials from the address), 403 and 429 for methods
// other than GET (a cookie-signed request from another origin; refused
// credentials), and a "default" error for 5xx.
std::string OpenApiJson(const Router& router, const OpenApiInfo& info = {});

// "/api/accounts/:id/keys/:keyId" -> "/api/accounts/{id}/keys/{keyId}".
std::string OpenApiPath(absl::string_view pattern);

// "POST /execute" for each route added without a RouteDoc summary, in the
// order added.
std::vector<std::string> UndocumentedRoutes(const Router& router);

// Serves OpenApiJson(*router) as application/json, made once, on the first
// request (when every route has been added).
// REQUIRES: `*router` outlives the handler: add it to that router.
UnaryHandler OpenApiHandler(const Router* router, OpenApiInfo info = {});

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_OPENAPI_H_
