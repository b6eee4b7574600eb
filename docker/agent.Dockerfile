# trellis/agent: trellis-agent on debian:12-slim.
# Build from the repository root:
#   docker build -f docker/agent.Dockerfile -t trellis/agent:latest .

# ---- build: the project's own dependency script, then only the agent's target -------------
FROM debian:12 AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DTRELLIS_BUILD_TESTS=OFF -DTRELLIS_BUILD_BENCH=OFF \
 && cmake --build /build --target trellis-agent \
 && install -D -s -m 0755 /build/cmd/trellis-agent /out/usr/local/bin/trellis-agent

# ---- runtime ------------------------------------------------------------------------------
FROM debian:12-slim AS runtime
# The shared libraries trellis-agent needs (ldd, then dpkg -S for the package of each):
# Abseil, gRPC (libgrpc++, libgrpc, libgpr), Protobuf, OpenSSL, prometheus-cpp (core, pull),
# cpp-httplib, yaml-cpp, tinyxml2. libstdc++6, libgcc-s1 and libc6 are already in the base
# image. ca-certificates: trust_bundle_url and the cloud metadata attestors use HTTPS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates \
      libabsl20220623 \
      libcpp-httplib0.11 \
      libgrpc++1.51 \
      libgrpc29 \
      libprometheus-cpp-core1.0 \
      libprometheus-cpp-pull1.0 \
      libprotobuf32 \
      libssl3 \
      libtinyxml2-9 \
      libyaml-cpp0.7 \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 trellis \
 && useradd --system --uid 10001 --gid trellis --home-dir /var/lib/trellis \
      --shell /usr/sbin/nologin trellis \
 && install -d -o trellis -g trellis -m 0750 /var/lib/trellis /run/trellis \
 && install -d -o trellis -g trellis -m 0700 /var/lib/trellis/agent \
 && install -d -o trellis -g trellis -m 0755 /run/trellis/agent
COPY --from=build /out/ /
# Non-root: the unix and k8s workload attestors read only world-readable /proc files
# (examples/k8s/README.md); a deployment that needs more grants it explicitly.
USER trellis
WORKDIR /var/lib/trellis
# 8088: health_checks as the configurations here set it. The Workload API is a Unix socket.
EXPOSE 8088
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/trellis-agent", "healthcheck", "-socketPath", "/run/trellis/agent/api.sock"]
ENTRYPOINT ["/usr/local/bin/trellis-agent"]
CMD ["run", "-config", "/etc/trellis/agent.conf"]
