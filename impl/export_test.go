package impl

import (
	"github.com/stackd/stackd/impl/refresh"
	"github.com/stackd/stackd/impl/repos"
)

// Test hooks: the served set and the refresh manager of an App.

// Registry is the set of served repositories.
func (a *App) Registry() *repos.Set { return a.repos }

// Refresh is the refresh manager.
func (a *App) Refresh() *refresh.Manager { return a.refresh }

// EventStreams is the number of event streams the broker holds open.
func (a *App) EventStreams() int { return a.streams.Subscribers() }
