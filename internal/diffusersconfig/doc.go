// Package diffusersconfig reads the members of a diffusers config.json (the
// config.json of a unet/ or vae/ checkpoint folder) for the model packages that build
// from one: read the file, take the object apart into fields, decode a field unless
// it is absent or null, and refuse fields the caller does not know. Every error names
// the field, and Load's name the file.
package diffusersconfig
