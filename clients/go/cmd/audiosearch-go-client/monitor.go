package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"

	audiosearchv1 "github.com/audiosearch/audiosearch/gen/go/audiosearch/v1"
)

// stdinName is the FILE argument that reads the feed from stdin.
const stdinName = "-"

// detectionLine is the JSON line printed for each MonitorDetection, STARTED and ENDED alike.
type detectionLine struct {
	Event          string     `json:"event"` // "started" or "ended"
	DetectionID    string     `json:"detection_id"`
	AudioID        string     `json:"id"`
	Name           string     `json:"name"`
	FeedLabel      string     `json:"feed_label"`
	FeedRange      [2]float64 `json:"feed_range"`      // seconds from the feed's start
	ReferenceRange [2]float64 `json:"reference_range"` // seconds of the recording played
	Score          float32    `json:"score"`
	Landmarks      int32      `json:"landmarks"`
	LandmarkShare  float32    `json:"landmark_share"`
	DecidedBy      string     `json:"decided_by"`
}

// summaryLine is the JSON line printed when the server has completed the call.
type summaryLine struct {
	Event          string  `json:"event"` // "summary"
	Started        int     `json:"started"`
	Ended          int     `json:"ended"`
	AudioSeconds   float64 `json:"audio_seconds"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	RealTimeFactor float64 `json:"real_time_factor"`
}

func describeDetection(detection *audiosearchv1.MonitorDetection) detectionLine {
	feed, reference := detection.GetFeedRange(), detection.GetReferenceRange()
	return detectionLine{
		Event:          strings.ToLower(strings.TrimPrefix(detection.GetState().String(), "DETECTION_STATE_")),
		DetectionID:    detection.GetDetectionId(),
		AudioID:        detection.GetAudio().GetId(),
		Name:           detection.GetAudio().GetName(),
		FeedLabel:      detection.GetFeedLabel(),
		FeedRange:      [2]float64{feed.GetStartSeconds(), feed.GetEndSeconds()},
		ReferenceRange: [2]float64{reference.GetStartSeconds(), reference.GetEndSeconds()},
		Score:          detection.GetScore(),
		Landmarks:      detection.GetLandmarks(),
		LandmarkShare:  detection.GetLandmarkShare(),
		DecidedBy:      detection.GetDecidedBy().String(),
	}
}

func progressLine(progress *audiosearchv1.MonitorProgress) string {
	return fmt.Sprintf("progress: analysed %.1f s of feed, %.2fx real time, lag %.1f s, %d playing",
		progress.GetAudioSeconds(), progress.GetRealTimeFactor(), progress.GetLagSeconds(),
		progress.GetOpenDetections())
}

// sendFeed sends the header, then the feed in 64 KiB chunks as they become readable, then half-closes.
// io.EOF from Send means the server has already ended the call: Recv has its status, so sending stops quietly.
func sendFeed(stream audiosearchv1.AudioSearchService_MonitorAudioClient, header *audiosearchv1.MonitorAudioHeader,
	feed io.Reader,
) error {
	err := stream.Send(&audiosearchv1.MonitorAudioRequest{
		Payload: &audiosearchv1.MonitorAudioRequest_Header{Header: header},
	})
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return describe("MonitorAudio send header", err)
	}
	buffer := make([]byte, chunkSize)
	for {
		n, readErr := feed.Read(buffer)
		if n > 0 {
			chunk := &audiosearchv1.MonitorAudioRequest{
				Payload: &audiosearchv1.MonitorAudioRequest_Chunk{Chunk: append([]byte(nil), buffer[:n]...)},
			}
			if err := stream.Send(chunk); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return describe("MonitorAudio send chunk", err)
			}
		}
		if readErr == io.EOF {
			break
		}
		if readErr != nil {
			return fmt.Errorf("reading the feed: %w", readErr)
		}
	}
	if err := stream.CloseSend(); err != nil {
		return describe("MonitorAudio half-close", err)
	}
	return nil
}

// runMonitor is the monitor command: monitor [flags] FILE|-. It streams the file (or stdin) through the
// bidirectional MonitorAudio as the bytes it holds, a container the gateway decodes with ffmpeg (wav, mp3, ogg,
// flac, AAC/ADTS), prints a JSON line per detection on stdout as it arrives (a play's "started", then its
// "ended" with the final ranges), progress on stderr, and a summary line once the server completes the call.
func runMonitor(args []string) error {
	flags := flag.NewFlagSet("monitor", flag.ContinueOnError)
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "usage: audiosearch-go-client monitor [flags] FILE|-")
		flags.PrintDefaults()
	}
	gateway := flags.String("gateway", "127.0.0.1:50051", "gateway address host:port")
	collection := flags.String("collection", "go_client", "collection whose recordings are watched for")
	label := flags.String("label", "", "the feed's name, echoed in each detection (default: the file name, or stdin)")
	timeout := flags.Duration("timeout", 0, "deadline of the whole run (0: none, a feed may last hours)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if flags.NArg() != 1 {
		flags.Usage()
		return errors.New("monitor takes one FILE (or - for stdin)")
	}
	path := flags.Arg(0)

	feed := io.Reader(os.Stdin)
	feedLabel := "stdin"
	if path != stdinName {
		file, err := os.Open(path)
		if err != nil {
			return err
		}
		defer file.Close()
		feed, feedLabel = file, filepath.Base(path)
	}
	if *label != "" {
		feedLabel = *label
	}

	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if *timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, *timeout)
	}
	defer cancel()
	conn, err := grpc.DialContext(ctx, *gateway,
		grpc.WithInsecure(),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(protoCodec{})),
	)
	if err != nil {
		return fmt.Errorf("dial %s: %w", *gateway, err)
	}
	defer conn.Close()
	client := audiosearchv1.NewAudioSearchServiceClient(conn)

	// Cancelling streamCtx ends the call (and the sender blocked in Send) when the receiver stops early.
	streamCtx, cancelStream := context.WithCancel(ctx)
	defer cancelStream()
	started := time.Now()
	stream, err := client.MonitorAudio(streamCtx)
	if err != nil {
		return describe("MonitorAudio", err)
	}
	header := &audiosearchv1.MonitorAudioHeader{Collection: *collection, FeedLabel: feedLabel}
	sent := make(chan error, 1)
	go func() {
		err := sendFeed(stream, header, feed)
		if err != nil {
			cancelStream() // the server waits for the half-close that will not come
		}
		sent <- err
	}()
	// senderFailed is the sender's error once it has finished, nil while it runs or when it succeeded.
	senderFailed := func() error {
		select {
		case err := <-sent:
			return err
		default:
			return nil
		}
	}

	summary := summaryLine{Event: "summary"}
	for {
		response, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if sendErr := senderFailed(); sendErr != nil {
				return sendErr
			}
			return describe("MonitorAudio", err)
		}
		if progress := response.GetProgress(); progress != nil {
			fmt.Fprintln(os.Stderr, progressLine(progress))
			summary.AudioSeconds = progress.GetAudioSeconds()
			summary.RealTimeFactor = progress.GetRealTimeFactor()
			continue
		}
		if detection := response.GetDetection(); detection != nil {
			switch detection.GetState() {
			case audiosearchv1.DetectionState_DETECTION_STATE_STARTED:
				summary.Started++
			case audiosearchv1.DetectionState_DETECTION_STATE_ENDED:
				summary.Ended++
			}
			printJSON(describeDetection(detection))
		}
	}
	if err := senderFailed(); err != nil {
		return err
	}
	summary.ElapsedSeconds = time.Since(started).Seconds()
	printJSON(summary)
	return nil
}
