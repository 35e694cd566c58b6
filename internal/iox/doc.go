// Package iox holds small io helpers shared by cairn's packages.
package iox
