#ifndef BUILDD_GATEWAY_REST_API_H_
#define BUILDD_GATEWAY_REST_API_H_

#include <memory>

#include "gateway/accounts_client.h"
#include "gateway/broker_client.h"
#include "gateway/router.h"
#include "gateway/sse.h"

namespace buildd::gateway {

struct RestApiOptions {
  SseOptions sse;
};

// Every route of the gateway: the REST API under /api (JSON <-> the
// services' protos), GET /api/events (SSE), POST/DELETE /api/session (the
// dashboard's cookie sign-in), GET /health and the dashboard page at GET /.
// Handlers translate and forward; the services authenticate and authorize.
std::shared_ptr<Router> BuildRouter(std::shared_ptr<AccountsClient> accounts,
                                    std::shared_ptr<BrokerClient> broker, RestApiOptions options);

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_REST_API_H_
