// Package deploy holds no code: it is what an operator needs to run zenklav's roles on
// machines of their own (systemd units, an example environment file, a Grafana dashboard,
// Prometheus alerts; README.md here). Its tests keep those files true to the code: every
// setting they name is one zenklav reads, every metric one it exports, every unit a role.
package deploy
