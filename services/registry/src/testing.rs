//! The `redis-server` fixture of `liverelay-redis`, where registry's tests and node's find it.

pub use liverelay_redis::testing::LocalRedis;
