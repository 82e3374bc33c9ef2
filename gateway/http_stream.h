#ifndef BUILDD_GATEWAY_HTTP_STREAM_H_
#define BUILDD_GATEWAY_HTTP_STREAM_H_

#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <memory>
#include <utility>
#include <variant>

namespace buildd::gateway {

// One client connection of the HTTP server: plain TCP, or TLS over TCP. It
// is an asynchronous read and write stream like either (Beast's and Asio's
// read and write algorithms take it), so that the server and stream routes
// (SSE) are written once for both. Timeouts, cancelling and closing act on
// the TCP stream underneath. The executor is the connection's strand.
// Not thread-safe: use it on that strand.
class HttpStream {
 public:
  using Plain = boost::beast::tcp_stream;
  using Tls = boost::beast::ssl_stream<boost::beast::tcp_stream>;
  using executor_type = Plain::executor_type;

  explicit HttpStream(Plain stream) : stream_(std::in_place_type<Plain>, std::move(stream)) {}
  // TLS with `context`, which the stream keeps for as long as it lives.
  HttpStream(Plain stream, std::shared_ptr<boost::asio::ssl::context> context)
      : context_(std::move(context)),
        stream_(std::in_place_type<Tls>, std::move(stream), *context_) {}

  HttpStream(HttpStream&&) = default;
  // Not assignable: an ssl_stream is not.

  // True over TLS.
  bool secure() const { return std::holds_alternative<Tls>(stream_); }

  Plain& tcp() {
    return std::visit([](auto& s) -> Plain& { return boost::beast::get_lowest_layer(s); }, stream_);
  }
  executor_type get_executor() { return tcp().get_executor(); }

  // Timeouts of the TCP stream: they apply to every operation started until
  // they are changed, TLS handshake and composed reads included, so that one
  // deadline bounds a whole request header however slowly it arrives.
  template <typename Duration>
  void expires_after(Duration duration) {
    tcp().expires_after(duration);
  }
  void expires_never() { tcp().expires_never(); }
  // Cancels pending operations; they complete with operation_aborted.
  void cancel() { tcp().cancel(); }

  // The server side of the TLS handshake. REQUIRES: secure().
  template <typename Handler>
  void async_handshake(Handler&& handler) {
    std::get<Tls>(stream_).async_handshake(boost::asio::ssl::stream_base::server,
                                           std::forward<Handler>(handler));
  }

  template <typename MutableBuffers, typename Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    std::visit([&](auto& s) { s.async_read_some(buffers, std::forward<Handler>(handler)); },
               stream_);
  }
  template <typename ConstBuffers, typename Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    std::visit([&](auto& s) { s.async_write_some(buffers, std::forward<Handler>(handler)); },
               stream_);
  }

  // Shuts down and closes the TCP connection; pending operations complete
  // with an error. Sends no TLS close_notify: HTTP's own framing tells the
  // client where each response ends.
  void Close() {
    boost::beast::error_code ignored;
    tcp().socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
    tcp().close();
  }

 private:
  // Declared first so that it outlives the TLS stream that uses it.
  std::shared_ptr<boost::asio::ssl::context> context_;
  std::variant<Plain, Tls> stream_;
};

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_HTTP_STREAM_H_
