package main

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

// protoCodec marshals messages with the google.golang.org/protobuf API that protoc-gen-go generates
// for (the "APIv2" runtime).
//
// Debian 12 ships grpc-go 1.33 built against github.com/golang/protobuf 1.3.5, whose default codec
// predates that API and cannot marshal these messages (oneofs in particular). Forcing this codec is
// what grpc-go >= 1.35 does by default, so with a module-mode build on current versions it is
// redundant but harmless.
type protoCodec struct{}

func (protoCodec) Marshal(value interface{}) ([]byte, error) {
	message, ok := value.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("protoCodec: cannot marshal %T", value)
	}
	return proto.Marshal(message)
}

func (protoCodec) Unmarshal(data []byte, value interface{}) error {
	message, ok := value.(proto.Message)
	if !ok {
		return fmt.Errorf("protoCodec: cannot unmarshal into %T", value)
	}
	return proto.Unmarshal(data, message)
}

// Name is the content-subtype: "proto", the same as grpc's default, so servers see a normal call.
func (protoCodec) Name() string { return "proto" }
