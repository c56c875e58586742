// bench/beast_echo.cpp: Boost.Beast WebSocket echo server for `make bench`.
// beast_echo PORT. One thread, one io_context; Beast's defaults (no
// compression, auto_fragment on, read_message_max 16 MiB -> raised to 64 MiB
// like the other peers). Echoes every message back with its type.
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

class session : public std::enable_shared_from_this<session> {
 public:
  explicit session(tcp::socket &&s) : ws_(std::move(s)) {}

  void run() {
    ws_.read_message_max(64 * 1024 * 1024);
    ws_.async_accept([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->read();
    });
  }

 private:
  void read() {
    ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return;  // closed (Beast answered the close frame) or failed
      self->ws_.text(self->ws_.got_text());
      self->ws_.async_write(self->buf_.data(), [self](beast::error_code ec2, std::size_t) {
        if (ec2) return;
        self->buf_.consume(self->buf_.size());
        self->read();
      });
    });
  }

  websocket::stream<beast::tcp_stream> ws_;
  beast::flat_buffer buf_;
};

static void do_accept(tcp::acceptor &acc) {
  acc.async_accept([&acc](beast::error_code ec, tcp::socket s) {
    if (!ec) {
      s.set_option(tcp::no_delay(true));
      std::make_shared<session>(std::move(s))->run();
    }
    do_accept(acc);
  });
}

int main(int argc, char **argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: beast_echo PORT\n");
    return 2;
  }
  auto port = static_cast<unsigned short>(std::atoi(argv[1]));
  asio::io_context ioc(1);
  tcp::acceptor acc(ioc);
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  acc.open(ep.protocol());
  acc.set_option(asio::socket_base::reuse_address(true));
  acc.bind(ep);
  acc.listen(4096);
  do_accept(acc);
  std::printf("beast (Boost %d.%d) listening on %u\n", BOOST_VERSION / 100000, BOOST_VERSION / 100 % 1000, port);
  std::fflush(stdout);
  ioc.run();
  return 0;
}
