#include "gateway/dashboard.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace buildd::gateway {

namespace {

struct Asset {
  const char* path;
  const char* file;
  const char* content_type;
  const char* summary;
};

// The page links its script, styles and icon by these paths; /favicon.ico is
// where browsers look for an icon by themselves.
constexpr Asset kAssets[] = {
    {"/", "index.html", "text/html; charset=utf-8", "The dashboard page"},
    {"/app.js", "app.js", "text/javascript; charset=utf-8", "The dashboard's script"},
    {"/app.css", "app.css", "text/css; charset=utf-8", "The dashboard's styles"},
    {"/favicon.svg", "favicon.svg", "image/svg+xml", "The dashboard's icon"},
    {"/favicon.ico", "favicon.svg", "image/svg+xml", "The dashboard's icon (where browsers look)"},
};

// Whether If-None-Match (a list of entity tags, or *) names `etag`.
bool Matches(absl::string_view if_none_match, absl::string_view etag) {
  if (if_none_match.empty()) return false;
  if (absl::StripAsciiWhitespace(if_none_match) == "*") return true;
  return absl::StrContains(if_none_match, etag);
}

}  // namespace

const EmbeddedFile* FindDashboardFile(absl::string_view name) {
  for (size_t i = 0; i < kDashboardFileCount; ++i) {
    if (kDashboardFiles[i].name == name) return &kDashboardFiles[i];
  }
  return nullptr;
}

void AddDashboardPageRoutes(Router& router) {
  for (const Asset& asset : kAssets) {
    const EmbeddedFile* file = FindDashboardFile(asset.file);
    if (file == nullptr) continue;  // The build embeds every file kAssets names.
    router.Get(
        asset.path,
        RouteDoc(asset.summary)
            .Tag("dashboard")
            .Describe("Embedded in the gateway at build time (gateway/web/). Answers 304 to an "
                      "If-None-Match that names its ETag.")
            .Header({"If-None-Match", "string", "An ETag seen before."})
            .ReturnsMedia(asset.content_type),
        [file, content_type = std::string(asset.content_type)](const HttpRequest& request,
                                                               Reply reply) {
          const std::string etag = absl::StrCat("\"", file->sha256, "\"");
          HttpResponse response;
          response.content_type = content_type;
          response.headers = {
              {"ETag", etag},
              {"Cache-Control", "no-cache"},
              {"X-Content-Type-Options", "nosniff"},
              {"Referrer-Policy", "no-referrer"},
              {"Content-Security-Policy", kDashboardCsp},
          };
          if (Matches(request.Header("If-None-Match"), etag)) {
            response.status = 304;
          } else {
            response.body = std::string(file->data);
          }
          reply(std::move(response));
        },
        Auth::kNone);
  }
}

}  // namespace buildd::gateway
