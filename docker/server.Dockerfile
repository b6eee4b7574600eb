# trellis/server: trellis-server and its PostgreSQL datastore module on debian:12-slim.
# Build from the repository root:
#   docker build -f docker/server.Dockerfile -t trellis/server:latest .

# ---- build: the project's own dependency script, then only the server's targets ----------
FROM debian:12 AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
# trellis-datastore-postgres is loaded at run time when a configuration names PostgreSQL;
# it is looked for in ../lib/trellis/ from the binary.
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DTRELLIS_BUILD_TESTS=OFF -DTRELLIS_BUILD_BENCH=OFF \
 && cmake --build /build --target trellis-server trellis-datastore-postgres \
 && install -D -s -m 0755 /build/cmd/trellis-server /out/usr/local/bin/trellis-server \
 && install -D -s -m 0644 /build/cmd/trellis-datastore-postgres.so \
      /out/usr/local/lib/trellis/trellis-datastore-postgres.so

# ---- runtime ------------------------------------------------------------------------------
FROM debian:12-slim AS runtime
# The shared libraries the two files need (ldd, then dpkg -S for the package of each):
#   trellis-server: Abseil, gRPC (libgrpc++, libgrpc, libgpr), Protobuf, OpenSSL, SQLite,
#   prometheus-cpp (core, pull), cpp-httplib, yaml-cpp, tinyxml2;
#   trellis-datastore-postgres.so: libpqxx (which brings libpq).
# libstdc++6, libgcc-s1 and libc6 are already in the base image. ca-certificates: the
# cloud node attestors fetch signing keys over HTTPS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates \
      libabsl20220623 \
      libcpp-httplib0.11 \
      libgrpc++1.51 \
      libgrpc29 \
      libpqxx-6.4 \
      libprometheus-cpp-core1.0 \
      libprometheus-cpp-pull1.0 \
      libprotobuf32 \
      libsqlite3-0 \
      libssl3 \
      libtinyxml2-9 \
      libyaml-cpp0.7 \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid so volume ownership and Kubernetes' runAsUser agree with the image.
RUN groupadd --system --gid 10001 trellis \
 && useradd --system --uid 10001 --gid trellis --home-dir /var/lib/trellis \
      --shell /usr/sbin/nologin trellis \
 && install -d -o trellis -g trellis -m 0750 /var/lib/trellis /run/trellis \
 && install -d -o trellis -g trellis -m 0700 /var/lib/trellis/server \
 && install -d -o trellis -g trellis -m 0750 /run/trellis/server
COPY --from=build /out/ /
USER trellis
WORKDIR /var/lib/trellis
# 8081: agent API (gRPC, mTLS); 8080: health_checks; 9988: telemetry Prometheus.
EXPOSE 8081 8080 9988
# The server's own health check, on the admin socket the configurations here use
# (socket_path = "/run/trellis/server/api.sock"); no HTTP client is needed in the image.
HEALTHCHECK --interval=10s --timeout=5s --start-period=90s --retries=3 \
  CMD ["/usr/local/bin/trellis-server", "healthcheck", "-socketPath", "/run/trellis/server/api.sock"]
ENTRYPOINT ["/usr/local/bin/trellis-server"]
CMD ["run", "-config", "/etc/trellis/server.conf"]
