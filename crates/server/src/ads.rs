//! The ADS gRPC server: state-of-the-world and Delta aggregated streams.
