#ifndef BUILDD_GATEWAY_DASHBOARD_API_H_
#define BUILDD_GATEWAY_DASHBOARD_API_H_

// What the dashboard shows besides tasks, workers and events:
//
//   GET /api/runners                    the runners connected to the broker
//                                       (the caller's account's; an
//                                       admin's: all, or ?accountId=)
//   GET /api/queue                      pending tasks by provider and label
//                                       set (?workspaceId=)
//   GET /api/usage                      what accounts spent today against
//                                       their maxCostPerDay
//   GET /api/accounts/:id/grants        an account's workspace grants
//   GET /api/workspaces/:id/grants      the grants on a workspace (admin)

#include <memory>

#include "gateway/accounts_client.h"
#include "gateway/broker_client.h"
#include "gateway/router.h"

namespace buildd::gateway {

void AddDashboardRoutes(Router& router, std::shared_ptr<AccountsClient> accounts,
                        std::shared_ptr<BrokerClient> broker);

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_DASHBOARD_API_H_
