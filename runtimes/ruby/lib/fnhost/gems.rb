# frozen_string_literal: true

module FnHost
  # The worker runs with --disable-gems: RubyGems costs ~60 ms of start-up on Debian and most
  # functions never use it. It is loaded here, and only
  #   - at INIT, when the function ships gems (a Gemfile, gems.rb or vendor/bundle), or
  #   - the first time user code asks for something only RubyGems can find: a `require` that the
  #     plain load path cannot satisfy, a call to `gem`, or a reference to the Gem constant.
  # So code written for an ordinary `ruby` works unchanged; it just pays for RubyGems when it
  # uses it.
  module Gems
    GEMFILES = %w[Gemfile gems.rb].freeze

    module_function

    def loaded?
      @loaded ? true : false
    end

    def load!
      return if @loaded

      @loaded = true
      require 'rubygems'
    end

    # The load path and gem path Lambda's Ruby runtime gives a function: its own directory and
    # lib/ on $LOAD_PATH, vendor/bundle/ruby/<api version> (where `bundle config set path
    # vendor/bundle` installs) first on GEM_PATH, the system's gems after it.
    def setup(code_dir)
      layer_gems
      lib = File.join(code_dir, 'lib')
      $LOAD_PATH.unshift(lib) if File.directory?(lib) && !$LOAD_PATH.include?(lib)
      $LOAD_PATH.unshift(code_dir) unless $LOAD_PATH.include?(code_dir)
      install_lazy_loading

      bundle = File.join(code_dir, 'vendor', 'bundle')
      has_bundle = File.directory?(bundle)
      return unless has_bundle || GEMFILES.any? { |name| File.file?(File.join(code_dir, name)) }

      if has_bundle
        require 'rbconfig'
        vendored = File.join(bundle, 'ruby', RbConfig::CONFIG['ruby_version'])
        # A trailing separator tells RubyGems to append its default paths (the system gems).
        sep = File::PATH_SEPARATOR
        ENV['GEM_PATH'] = [vendored, ENV['GEM_PATH']].compact.join(sep) + sep
        # A RubyGems loaded at start-up has read GEM_PATH already.
        Gem.clear_paths if @loaded
      end
      load!
    end

    # Lambda's /opt/ruby/gems/<api version> on GEM_PATH, before RubyGems reads it (the layers'
    # ruby/lib is on RUBYLIB: runtime.toml's [layers]).
    def layer_gems
      layers = ENV['FNHOST_LAYERS_DIR']
      return if layers.nil? || layers.empty?

      require 'rbconfig'
      gems = File.join(layers, 'ruby', 'gems', RbConfig::CONFIG['ruby_version'])
      sep = File::PATH_SEPARATOR
      ENV['GEM_PATH'] = [gems, ENV['GEM_PATH']].compact.join(sep) + sep
      Gem.clear_paths if @loaded
    end

    def install_lazy_loading
      return if @lazy_installed || @loaded

      @lazy_installed = true
      # Started without --disable-gems: RubyGems is already in charge of require and gem.
      return @loaded = true if Object.const_defined?(:Gem, false)

      # Resolving Gem loads RubyGems, which defines it.
      Object.autoload(:Gem, 'rubygems')
      Kernel.module_eval do
        # Kept under our own name; RubyGems later aliases the method below as its
        # gem_original_require and redefines require around it, exactly as it would wrap the
        # built-in one.
        alias_method :fnhost_builtin_require, :require
        private :fnhost_builtin_require

        def require(path)
          fnhost_builtin_require(path)
        rescue LoadError
          raise if FnHost::Gems.loaded?

          FnHost::Gems.load!
          # Now RubyGems' require, which also searches installed gems.
          require(path)
        end
        private :require

        def gem(*args, **opts)
          raise NoMethodError, 'RubyGems could not be loaded' if FnHost::Gems.loaded?

          FnHost::Gems.load!
          # RubyGems has replaced this method with its own.
          gem(*args, **opts)
        end
        private :gem
      end
    end
  end
end
