#ifndef BUILDD_GATEWAY_DASHBOARD_H_
#define BUILDD_GATEWAY_DASHBOARD_H_

#include "absl/strings/string_view.h"

namespace buildd::gateway {

// The dashboard page served at GET /: self-contained HTML (no external
// assets). Signs in through POST /api/session, lists tasks and shows the
// live event stream of /api/events.
absl::string_view DashboardHtml();

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_DASHBOARD_H_
