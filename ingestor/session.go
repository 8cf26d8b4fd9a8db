package ingestor

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/redis/go-redis/v9"

	"github.com/takt/takt/internal/redisx"
)

// sessionStore keeps persistent MQTT sessions in Redis, so that a session
// outlives the ingestor process that made it and any ingestor can take it
// up: what matters is that a reconnecting device hears "session present"
// (an MQTT 5 device that hears otherwise drops the messages it has not seen
// acknowledged, and they would be lost) and keeps its subscription to its
// errors topic. Takt keeps no other session state: it sends devices
// nothing they must acknowledge but their error messages, which are not
// kept across a restart.
type sessionStore struct {
	rdb    *redis.Client
	keys   redisx.Keys
	max    time.Duration // the longest expiry (TAKT_MQTT_SESSION_EXPIRY)
	logger *slog.Logger
}

// storedSession is what is kept of a session.
type storedSession struct {
	Protocol byte            `json:"protocol"`
	Expiry   uint32          `json:"expiry"` // seconds after disconnect (MQTT 5); 0 for 3.1.1
	Username string          `json:"username"`
	Subs     map[string]byte `json:"subs"` // filter -> QoS
	Listener string          `json:"listener"`
}

// persistent reports whether cl's session outlives its connection, and for
// how long.
func (s *sessionStore) persistent(cl *mqtt.Client) (time.Duration, bool) {
	if cl.Properties.ProtocolVersion == 5 {
		e := time.Duration(cl.Properties.Props.SessionExpiryInterval) * time.Second
		return min(e, s.max), e > 0
	}
	return s.max, !cl.Properties.Clean
}

// save stores cl's session, when it is persistent.
func (s *sessionStore) save(cl *mqtt.Client) {
	ttl, ok := s.persistent(cl)
	if !ok || cl.Net.Inline {
		return
	}
	st := storedSession{Protocol: cl.Properties.ProtocolVersion, Username: string(cl.Properties.Username),
		Listener: cl.Net.Listener, Subs: map[string]byte{}}
	if st.Protocol == 5 {
		st.Expiry = uint32(ttl / time.Second)
	}
	for f, sub := range cl.State.Subscriptions.GetAll() {
		st.Subs[f] = sub.Qos
	}
	b, err := json.Marshal(st)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// The expiry counts from the disconnect; while connected it is
	// refreshed at each change, and at the disconnect.
	if err := s.rdb.Set(ctx, s.keys.MQTTSession(cl.ID), b, ttl).Err(); err != nil {
		s.logger.Warn("mqtt: session not stored", "client_id", cl.ID, "err", err)
	}
}

// remove forgets a session that ended.
func (s *sessionStore) remove(clientID string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.rdb.Del(ctx, s.keys.MQTTSession(clientID)).Err(); err != nil {
		s.logger.Warn("mqtt: session not removed", "client_id", clientID, "err", err)
	}
}

// restore puts the stored session of clientID into srv as a disconnected
// client, as mochi does with the sessions of a store at start; the
// connecting client then takes it over.
func (s *sessionStore) restore(srv *mqtt.Server, clientID string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	b, err := s.rdb.Get(ctx, s.keys.MQTTSession(clientID)).Bytes()
	if err != nil {
		if err != redis.Nil {
			s.logger.Warn("mqtt: stored session not read", "client_id", clientID, "err", err)
		}
		return
	}
	var st storedSession
	if err := json.Unmarshal(b, &st); err != nil {
		return
	}
	cl := srv.NewClient(nil, st.Listener, clientID, false)
	cl.Properties.ProtocolVersion = st.Protocol
	cl.Properties.Username = []byte(st.Username)
	if st.Protocol == 5 {
		cl.Properties.Props.SessionExpiryInterval = st.Expiry
		cl.Properties.Props.SessionExpiryIntervalFlag = true
	}
	cl.Stop(packets.ErrServerShuttingDown) // disconnected
	for f, qos := range st.Subs {
		sub := packets.Subscription{Filter: f, Qos: qos}
		srv.Topics.Subscribe(clientID, sub)
		cl.State.Subscriptions.Add(f, sub)
	}
	srv.Clients.Add(cl)
}
