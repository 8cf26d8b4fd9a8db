package kafkax

import (
	"crypto/tls"
	"net"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/takt/takt/internal/config"
	"github.com/takt/takt/internal/tlsx"
)

// SASL mechanisms Takt's clients speak (TAKT_KAFKA_SASL_MECHANISM).
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Security is how Takt's clients reach a Kafka cluster that wants TLS,
// SASL or both. The zero value is a plain connection without
// authentication (the local broker).
type Security struct {
	// TLS is TAKT_KAFKA_TLS and TAKT_KAFKA_TLS_*.
	TLS tlsx.Client
	// SASLMechanism is "", PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
	// (TAKT_KAFKA_SASL_MECHANISM); SASLUser and SASLPassword are the
	// credentials (TAKT_KAFKA_SASL_USER, TAKT_KAFKA_SASL_PASSWORD).
	SASLMechanism string
	SASLUser      string
	SASLPassword  string
}

// SecurityFromEnv reads TAKT_KAFKA_TLS* and TAKT_KAFKA_SASL_*.
func SecurityFromEnv(e *config.Env) Security {
	return Security{
		TLS:           tlsx.ClientFromEnv(e, "KAFKA"),
		SASLMechanism: strings.ToUpper(e.String("KAFKA_SASL_MECHANISM", "")),
		SASLUser:      e.String("KAFKA_SASL_USER", ""),
		SASLPassword:  e.String("KAFKA_SASL_PASSWORD", ""),
	}
}

// Validate reports every problem with s.
func (s Security) Validate() error {
	var p config.Problems
	switch s.SASLMechanism {
	case "":
		p.Addf(s.SASLUser != "" || s.SASLPassword != "",
			"TAKT_KAFKA_SASL_USER/PASSWORD: set, but TAKT_KAFKA_SASL_MECHANISM is empty")
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		p.Addf(s.SASLUser == "", "TAKT_KAFKA_SASL_USER: empty, but TAKT_KAFKA_SASL_MECHANISM=%s", s.SASLMechanism)
		p.Addf(s.SASLPassword == "", "TAKT_KAFKA_SASL_PASSWORD: empty, but TAKT_KAFKA_SASL_MECHANISM=%s", s.SASLMechanism)
		p.Addf(s.SASLMechanism == SASLPlain && !s.TLS.Enabled,
			"TAKT_KAFKA_SASL_MECHANISM=PLAIN sends the password in clear text: set TAKT_KAFKA_TLS=true")
	default:
		p.Addf(true, "TAKT_KAFKA_SASL_MECHANISM=%q: must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.SASLMechanism)
	}
	if err := s.TLS.Validate(); err != nil {
		p = append(p, err)
	}
	return p.Err()
}

// Opts returns the client options of s: a TLS dialer and a SASL
// mechanism, each when configured.
func (s Security) Opts() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	tc, err := s.TLS.Config()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		// The dialer fills in the server name per broker when none is set.
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: tc}
		opts = append(opts, kgo.Dialer(d.DialContext))
	}
	if m := s.mechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func (s Security) mechanism() sasl.Mechanism {
	switch s.SASLMechanism {
	case SASLPlain:
		return plain.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsMechanism()
	case SASLScramSHA256:
		return scram.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsSha256Mechanism()
	case SASLScramSHA512:
		return scram.Auth{User: s.SASLUser, Pass: s.SASLPassword}.AsSha512Mechanism()
	}
	return nil
}
