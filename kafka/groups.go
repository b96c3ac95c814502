package kafka

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// GroupMembers is how many members the consumer group has now, as its coordinator says. A
// fresh broker creates its offsets topic on the first question and is no coordinator until
// then: callers that need an answer ask again.
func GroupMembers(ctx context.Context, brokers []string, group string) (int, error) {
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: 10 * time.Second}
	fc, err := client.FindCoordinator(ctx, &kafkago.FindCoordinatorRequest{Key: group, KeyType: kafkago.CoordinatorKeyTypeConsumer})
	if err != nil {
		return 0, err
	}
	if fc.Error != nil {
		return 0, fc.Error
	}
	addr := kafkago.TCP(net.JoinHostPort(fc.Coordinator.Host, strconv.Itoa(fc.Coordinator.Port)))
	resp, err := client.DescribeGroups(ctx, &kafkago.DescribeGroupsRequest{Addr: addr, GroupIDs: []string{group}})
	if err != nil {
		return 0, err
	}
	if len(resp.Groups) != 1 {
		return 0, fmt.Errorf("describe group %s: %d groups in the answer", group, len(resp.Groups))
	}
	if resp.Groups[0].Error != nil {
		return 0, resp.Groups[0].Error
	}
	return len(resp.Groups[0].Members), nil
}
