#ifndef BUILDD_GATEWAY_DASHBOARD_H_
#define BUILDD_GATEWAY_DASHBOARD_H_

// The dashboard: the files of gateway/web/ (a page, its script, its styles
// and its icon), embedded in the binary at build time and served by the
// gateway itself, so it needs no other server and no external asset.

#include <cstddef>

#include "absl/strings/string_view.h"
#include "gateway/router.h"

namespace buildd::gateway {

// One file of gateway/web/, as the build embedded it.
struct EmbeddedFile {
  absl::string_view name;    // Its name in gateway/web/ ("app.js").
  absl::string_view data;
  absl::string_view sha256;  // Hex; the file's ETag.
};

// Written by gateway/web/embed.cmake (web_assets.cc in the build tree).
extern const EmbeddedFile kDashboardFiles[];
extern const size_t kDashboardFileCount;

// The Content-Security-Policy of the dashboard's page: only its own scripts,
// styles and API, nothing inline, never framed.
inline constexpr char kDashboardCsp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

// The embedded file `name`, or nullptr.
const EmbeddedFile* FindDashboardFile(absl::string_view name);

// GET / (the page), /app.js, /app.css, /favicon.svg and /favicon.ico, without
// a key. Each answers with a strong ETag (the file's hash) and
// `Cache-Control: no-cache`, so a browser revalidates and gets 304 until the
// gateway is rebuilt with other files.
void AddDashboardPageRoutes(Router& router);

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_DASHBOARD_H_
