#include "gateway/router.h"

#include <algorithm>

#include "absl/strings/str_split.h"

namespace buildd::gateway {

namespace http = boost::beast::http;

namespace {
std::vector<std::string> Segments(absl::string_view path) {
  if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return absl::StrSplit(path, '/');
}
}  // namespace

void Router::Add(Route route, RouteDoc doc) {
  Entry entry{std::move(route), std::move(doc), {}};
  entry.segments = Segments(entry.route.pattern);
  entries_.push_back(std::move(entry));
}

void Router::Get(std::string pattern, UnaryHandler handler, Auth auth) {
  Get(std::move(pattern), RouteDoc(), std::move(handler), auth);
}

void Router::Post(std::string pattern, UnaryHandler handler, Auth auth) {
  Post(std::move(pattern), RouteDoc(), std::move(handler), auth);
}

void Router::Patch(std::string pattern, UnaryHandler handler, Auth auth) {
  Patch(std::move(pattern), RouteDoc(), std::move(handler), auth);
}

void Router::Delete(std::string pattern, UnaryHandler handler, Auth auth) {
  Delete(std::move(pattern), RouteDoc(), std::move(handler), auth);
}

void Router::GetStream(std::string pattern, StreamHandler handler, Auth auth) {
  GetStream(std::move(pattern), RouteDoc(), std::move(handler), auth);
}

void Router::Get(std::string pattern, RouteDoc doc, UnaryHandler handler, Auth auth) {
  Add(Route{http::verb::get, std::move(pattern), auth, std::move(handler), nullptr},
      std::move(doc));
}

void Router::Post(std::string pattern, RouteDoc doc, UnaryHandler handler, Auth auth) {
  Add(Route{http::verb::post, std::move(pattern), auth, std::move(handler), nullptr},
      std::move(doc));
}

void Router::Patch(std::string pattern, RouteDoc doc, UnaryHandler handler, Auth auth) {
  Add(Route{http::verb::patch, std::move(pattern), auth, std::move(handler), nullptr},
      std::move(doc));
}

void Router::Delete(std::string pattern, RouteDoc doc, UnaryHandler handler, Auth auth) {
  Add(Route{http::verb::delete_, std::move(pattern), auth, std::move(handler), nullptr},
      std::move(doc));
}

void Router::GetStream(std::string pattern, RouteDoc doc, StreamHandler handler, Auth auth) {
  Add(Route{http::verb::get, std::move(pattern), auth, nullptr, std::move(handler)},
      std::move(doc));
}

Router::Match Router::Find(http::verb method, absl::string_view path) const {
  Match match;
  const std::vector<std::string> segments = Segments(path);
  for (const Entry& entry : entries_) {
    if (entry.segments.size() != segments.size()) continue;
    std::map<std::string, std::string> params;
    bool matches = true;
    for (size_t i = 0; i < segments.size() && matches; ++i) {
      const std::string& want = entry.segments[i];
      if (!want.empty() && want[0] == ':') {
        std::string value;
        matches = !segments[i].empty() && PercentDecode(segments[i], false, &value);
        params[want.substr(1)] = std::move(value);
      } else {
        matches = want == segments[i];
      }
    }
    if (!matches) continue;
    if (entry.route.method == method) {
      if (match.route == nullptr) {
        match.route = &entry.route;
        match.params = std::move(params);
      }
    } else if (std::find(match.allowed.begin(), match.allowed.end(), entry.route.method) ==
               match.allowed.end()) {
      match.allowed.push_back(entry.route.method);
    }
  }
  if (match.route != nullptr) match.allowed.clear();
  return match;
}

}  // namespace buildd::gateway
