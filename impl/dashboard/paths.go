package dashboard

import "strings"

// AssetPrefix is where the assets are served: /assets/<name>.<hash>.<ext>.
const AssetPrefix = "/assets/"

// serverSegments are the first path segments of the routes that are not
// the app's: the API, sign-in, Swagger UI, health, readiness, the problem
// type pages, and the assets. A path under one of them never answers the shell; one that no
// route takes is a 404 problem. The spec (/openapi.yaml, /openapi.json) is
// any first segment starting with "openapi." (isServerSegment).
var serverSegments = map[string]bool{
	"api":      true,
	"auth":     true,
	"docs":     true,
	"healthz":  true,
	"readyz":   true,
	"assets":   true,
	"problems": true,
}

func isServerSegment(seg string) bool {
	return serverSegments[seg] || strings.HasPrefix(seg, "openapi.")
}

// IsAppPath reports whether the dashboard answers path (the decoded
// r.URL.Path) with its shell: every absolute path whose first segment is
// not one of the server's (/api, /auth, /docs, /openapi.*, /healthz,
// /readyz, /problems, /assets). So /, /r/{repoID}, /r/{repoID}/b/{branch...},
// /r/{repoID}/syncs, and any path the app does not know (it shows its own
// not-found page) can be reloaded and linked.
func IsAppPath(path string) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	seg, _, _ := strings.Cut(path[1:], "/")
	return !isServerSegment(seg)
}

// IsAssetPath reports whether path is under AssetPrefix (an asset, known
// or not).
func IsAssetPath(path string) bool {
	return strings.HasPrefix(path, AssetPrefix)
}
