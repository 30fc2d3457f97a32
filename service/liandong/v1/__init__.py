"""The gRPC API's generated code (liandong/v1/*.proto), produced by `make proto`, never edited."""
