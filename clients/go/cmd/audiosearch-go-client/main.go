// Command audiosearch-go-client is a minimal Go client of audiosearch.v1.AudioSearchService.
//
// It creates a collection (an existing one is fine), ingests one file with the client-streaming
// IngestAudio, searches the collection with the same file and prints one JSON line:
//
//	{"audio_id": ..., "top_match_id": ..., "top_name": ..., "top_score": ..., "already_existed": ...}
//
// Then it asks GetAudio for an id that does not exist and prints the google.rpc.ErrorInfo reason
// of the error as {"error_reason": "AUDIO_NOT_FOUND"}: callers branch on ErrorInfo.reason, never on
// the message text. Any unexpected error exits non-zero.
//
// The monitor command streams a feed (a file, or - for stdin) through the bidirectional MonitorAudio and
// prints each detection as a JSON line as it arrives, progress on stderr and a summary line at the end:
//
//	audiosearch-go-client monitor --collection NAME [--gateway host:port] [--label TEXT] FILE|-
//
// Build it with scripts/build_clients.sh, which generates the audiosearchv1 package from protos/.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	audiosearchv1 "github.com/audiosearch/audiosearch/gen/go/audiosearch/v1"
)

const (
	errorDomain = "audiosearch.dev"
	chunkSize   = 64 * 1024
)

// errorInfo returns the google.rpc.ErrorInfo an audiosearch error carries, or nil.
func errorInfo(err error) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
			return info
		}
	}
	return nil
}

// reason returns the ErrorInfo reason of err ("" when it carries none).
func reason(err error) string {
	if info := errorInfo(err); info != nil {
		return info.GetReason()
	}
	return ""
}

// reasonName is the ErrorInfo.reason string of an ErrorReason value: its name without the prefix.
func reasonName(r audiosearchv1.ErrorReason) string {
	return strings.TrimPrefix(r.String(), "ERROR_REASON_")
}

// describe formats an RPC error with its code and reason for stderr.
func describe(what string, err error) error {
	st, _ := status.FromError(err)
	return fmt.Errorf("%s: code=%s reason=%q message=%q", what, st.Code(), reason(err), st.Message())
}

// ensureCollection creates the collection and reports whether it existed already.
func ensureCollection(ctx context.Context, client audiosearchv1.AudioSearchServiceClient, name string) (bool, error) {
	_, err := client.CreateCollection(ctx, &audiosearchv1.CreateCollectionRequest{
		Name:        name,
		Description: "created by audiosearch-go-client",
	})
	switch {
	case err == nil:
		return false, nil
	case reason(err) == reasonName(audiosearchv1.ErrorReason_ERROR_REASON_COLLECTION_EXISTS):
		return true, nil
	default:
		return false, describe("CreateCollection", err)
	}
}

// ingest streams the file: the header first, then 64 KiB chunks.
func ingest(ctx context.Context, client audiosearchv1.AudioSearchServiceClient, collection, path string) (
	*audiosearchv1.IngestAudioResponse, error,
) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()

	stream, err := client.IngestAudio(ctx)
	if err != nil {
		return nil, describe("IngestAudio", err)
	}
	header := &audiosearchv1.IngestAudioRequest{Payload: &audiosearchv1.IngestAudioRequest_Header{
		Header: &audiosearchv1.IngestAudioHeader{
			Collection: collection,
			Name:       filepath.Base(path),
			Metadata:   map[string]string{"client": "go"},
		},
	}}
	if err := stream.Send(header); err != nil && !errors.Is(err, io.EOF) {
		return nil, describe("IngestAudio send header", err)
	}
	buffer := make([]byte, chunkSize)
	for {
		n, readErr := file.Read(buffer)
		if n > 0 {
			chunk := &audiosearchv1.IngestAudioRequest{
				Payload: &audiosearchv1.IngestAudioRequest_Chunk{Chunk: append([]byte(nil), buffer[:n]...)},
			}
			// io.EOF from Send means the server has already ended the call; CloseAndRecv has its status.
			if err := stream.Send(chunk); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, describe("IngestAudio send chunk", err)
			}
		}
		if readErr == io.EOF {
			break
		}
		if readErr != nil {
			return nil, readErr
		}
	}
	response, err := stream.CloseAndRecv()
	if err != nil {
		return nil, describe("IngestAudio", err)
	}
	return response, nil
}

// unknownID returns an id shaped like a real one (same length and separators) that cannot exist.
func unknownID(real string) string {
	filler := '0'
	if strings.Trim(real, "0-") == "" {
		filler = '1'
	}
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' {
			return r
		}
		return filler
	}, real)
}

func printJSON(value interface{}) {
	line, err := json.Marshal(value)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(line))
}

func run() error {
	gateway := flag.String("gateway", "127.0.0.1:50051", "gateway address host:port")
	collection := flag.String("collection", "go_client", "collection name")
	path := flag.String("file", "", "audio file to ingest and search with")
	timeout := flag.Duration("timeout", 5*time.Minute, "deadline of the whole run")
	flag.Parse()
	if *path == "" {
		return errors.New("--file is required")
	}
	content, err := os.ReadFile(*path)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	// No WithBlock: an unreachable gateway fails the first call with UNAVAILABLE instead of hanging.
	conn, err := grpc.DialContext(ctx, *gateway,
		grpc.WithInsecure(),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(protoCodec{})),
	)
	if err != nil {
		return fmt.Errorf("dial %s: %w", *gateway, err)
	}
	defer conn.Close()
	client := audiosearchv1.NewAudioSearchServiceClient(conn)

	collectionExisted, err := ensureCollection(ctx, client, *collection)
	if err != nil {
		return err
	}
	ingested, err := ingest(ctx, client, *collection, *path)
	if err != nil {
		return err
	}
	found, err := client.SearchAudio(ctx, &audiosearchv1.SearchAudioRequest{
		Collection:   *collection,
		AudioContent: content,
		TopK:         5,
	})
	if err != nil {
		return describe("SearchAudio", err)
	}
	result := map[string]interface{}{
		"audio_id":           ingested.GetAudio().GetId(),
		"already_existed":    ingested.GetAlreadyExisted(),
		"collection_existed": collectionExisted,
		// An untrained model's tags are meaningless: a client that shows tags says so when this is true.
		"model_untrained": found.GetModel().GetUntrained(),
		"top_match_id":    nil,
		"top_name":        nil,
		"top_score":       nil,
		// Which evidence made the top result a match: MATCH_EVIDENCE_EMBEDDING, _LANDMARKS or _BOTH.
		"top_decided_by": nil,
	}
	if matches := found.GetMatches(); len(matches) > 0 {
		result["top_match_id"] = matches[0].GetAudio().GetId()
		result["top_name"] = matches[0].GetAudio().GetName()
		result["top_score"] = matches[0].GetScore()
		result["top_decided_by"] = matches[0].GetDecidedBy().String()
	}
	printJSON(result)
	if len(found.GetMatches()) == 0 {
		return errors.New("SearchAudio returned no match for the file just ingested")
	}

	_, err = client.GetAudio(ctx, &audiosearchv1.GetAudioRequest{
		Collection: *collection,
		AudioId:    unknownID(ingested.GetAudio().GetId()),
	})
	if err == nil {
		return errors.New("GetAudio of an unknown id succeeded")
	}
	printJSON(map[string]string{"error_reason": reason(err)})
	if reason(err) != reasonName(audiosearchv1.ErrorReason_ERROR_REASON_AUDIO_NOT_FOUND) {
		return describe("GetAudio of an unknown id: expected reason AUDIO_NOT_FOUND", err)
	}
	return nil
}

func main() {
	command := run
	if len(os.Args) > 1 && os.Args[1] == "monitor" {
		command = func() error { return runMonitor(os.Args[2:]) }
	}
	if err := command(); err != nil {
		fmt.Fprintln(os.Stderr, "audiosearch-go-client:", err)
		os.Exit(1)
	}
}
