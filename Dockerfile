# The api, worker and pipeline examples with every backend compiled in.
#   docker build -t product-pipeline .
#   docker run -p 8080:8080 product-pipeline                # pipeline on the embedded defaults
FROM rust:1-bookworm AS build
# cmake + nasm build the bundled libjpeg-turbo; librdkafka builds with make.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake nasm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --features rabbit,kafka,postgres,s3 \
      --example api --example worker --example pipeline \
 && mkdir /out \
 && cp target/release/examples/api target/release/examples/worker target/release/examples/pipeline /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/product-pipeline --create-home app
COPY --from=build /out/ /usr/local/bin/
USER app
WORKDIR /var/lib/product-pipeline
# Created here so named volumes mounted on them belong to `app`.
RUN mkdir -p media data
# MEDIA_URL (e.g. s3://bucket/prefix), when set, takes precedence over MEDIA_DIR.
ENV HTTP_ADDR=0.0.0.0:8080 \
    MEDIA_DIR=/var/lib/product-pipeline/media \
    DATABASE_URL=sqlite:///var/lib/product-pipeline/data/pipeline.db
# 8080: the API (and its /metrics); 9100: a worker's /healthz, /readyz and /metrics when METRICS_ADDR is set.
EXPOSE 8080 9100
STOPSIGNAL SIGTERM
CMD ["pipeline"]
