#ifndef BUILDD_GATEWAY_ROUTER_H_
#define BUILDD_GATEWAY_ROUTER_H_

#include <boost/beast/http/verb.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "gateway/connection_tracker.h"
#include "gateway/http_message.h"
#include "gateway/http_stream.h"
#include "gateway/route_doc.h"

namespace buildd::gateway {

// Completes an ordinary request. Call exactly once, from any thread.
using Reply = std::function<void(HttpResponse)>;
using UnaryHandler = std::function<void(const HttpRequest& request, Reply reply)>;

// Takes over a connection for a streaming response (SSE). The handler owns
// `stream` (plain or TLS) from then on and keeps `token` until it no longer
// touches it.
using StreamHandler = std::function<void(HttpRequest request, HttpStream stream,
                                         std::shared_ptr<ConnectionTracker::Token> token)>;

enum class Auth { kRequired, kNone };

struct Route {
  boost::beast::http::verb method;
  // Segments separated by '/'; ":name" captures one segment.
  std::string pattern;
  Auth auth = Auth::kRequired;
  // Exactly one of these is set.
  UnaryHandler unary;
  StreamHandler stream;
};

// Maps method and path to a handler. Routes are tried in the order they were
// added; the first whose pattern matches wins. Each route may carry its
// documentation (RouteDoc), from which GET /openapi.json is made; a route
// added without one still works, and OpenApiTest names it. Not thread-safe
// while routes are added; Find and routes() are thread-safe afterwards.
class Router {
 public:
  void Add(Route route, RouteDoc doc = {});
  void Get(std::string pattern, UnaryHandler handler, Auth auth = Auth::kRequired);
  void Post(std::string pattern, UnaryHandler handler, Auth auth = Auth::kRequired);
  void Patch(std::string pattern, UnaryHandler handler, Auth auth = Auth::kRequired);
  void Delete(std::string pattern, UnaryHandler handler, Auth auth = Auth::kRequired);
  void GetStream(std::string pattern, StreamHandler handler, Auth auth = Auth::kRequired);
  // The same, documented.
  void Get(std::string pattern, RouteDoc doc, UnaryHandler handler, Auth auth = Auth::kRequired);
  void Post(std::string pattern, RouteDoc doc, UnaryHandler handler, Auth auth = Auth::kRequired);
  void Patch(std::string pattern, RouteDoc doc, UnaryHandler handler, Auth auth = Auth::kRequired);
  void Delete(std::string pattern, RouteDoc doc, UnaryHandler handler, Auth auth = Auth::kRequired);
  void GetStream(std::string pattern, RouteDoc doc, StreamHandler handler,
                 Auth auth = Auth::kRequired);

  struct Entry {
    Route route;
    RouteDoc doc;
    std::vector<std::string> segments;  // Of route.pattern.
  };
  // Every route, in the order added.
  const std::vector<Entry>& routes() const { return entries_; }

  struct Match {
    const Route* route = nullptr;  // Null: 404 when `allowed` is empty, else 405.
    std::map<std::string, std::string> params;
    std::vector<boost::beast::http::verb> allowed;  // Methods the path accepts.
  };
  // `path` is the request target without its query; a trailing '/' is
  // ignored. A parameter that does not decode (see PercentDecode) makes the
  // path unknown.
  Match Find(boost::beast::http::verb method, absl::string_view path) const;

 private:
  std::vector<Entry> entries_;
};

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_ROUTER_H_
